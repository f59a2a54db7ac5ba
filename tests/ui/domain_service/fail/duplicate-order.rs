use flext::prelude::*;

struct Signup {
    email: String,
}

#[domain_service]
impl Signup {
    #[business_rule(order = 1)]
    fn email_present(&self) -> RuleResult {
        ensure!(!self.email.is_empty(), "email is required")
    }

    #[business_rule(order = 1)]
    fn email_has_at(&self) -> RuleResult {
        ensure!(self.email.contains('@'), "email needs an @")
    }

    #[step]
    fn done(&self) -> Result<()> {
        Ok(())
    }
}

fn main() {
    let _ = Signup { email: String::new() }.execute_sync(&Context::new());
}
