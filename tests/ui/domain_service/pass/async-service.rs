use flext::prelude::*;

struct Fetch {
    id: u32,
}

#[domain_service(on_error = report)]
impl Fetch {
    #[business_rule]
    async fn id_known(&self) -> RuleResult {
        ensure!(self.id < 100, "unknown id {}", self.id)
    }

    #[step]
    async fn load(&self, ctx: &Context) -> Result<String> {
        Ok(format!("item {} for {}", self.id, ctx.correlation_id()))
    }

    #[tap]
    fn audit(&self, item: &String) {
        let _ = item;
    }

    #[step]
    fn length(&self, item: String) -> Result<usize> {
        Ok(item.len())
    }

    async fn report(&self, error: Error) -> Error {
        error
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let n = rt.block_on(Fetch { id: 7 }.execute(&Context::new())).unwrap();
    assert!(n > 10);
    assert!(rt.block_on(Fetch { id: 700 }.execute(&Context::new())).is_err());
}
