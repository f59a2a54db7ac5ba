use flext::prelude::*;

struct Signup {
    email: String,
}

// An async rule makes the whole service async: there is no `execute_sync`.
#[domain_service]
impl Signup {
    #[business_rule]
    async fn email_unused(&self) -> RuleResult {
        ensure!(!self.email.is_empty(), "email is required")
    }

    #[step]
    fn create(&self) -> Result<u64> {
        Ok(7)
    }
}

fn main() {
    let _ = Signup { email: "a@b.io".into() }.execute_sync(&Context::new());
}
