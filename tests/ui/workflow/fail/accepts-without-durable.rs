use flext::prelude::*;

struct Import {
    file: String,
}

#[workflow(accepts = "extract\tusize\t-\t\t")]
impl Import {
    #[workflow_step]
    async fn extract(&self) -> Result<usize> {
        Ok(self.file.len())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let run = Import { file: "a.csv".into() }.run(&Context::new()).await;
    let _ = run.output::<usize>("extract");
}
