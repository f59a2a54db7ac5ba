use flext::prelude::*;

struct Signup;

#[domain_service]
impl Signup {
    #[business_rule]
    fn email_has_at(&self, email: &str) -> RuleResult {
        ensure!(email.contains('@'), "email needs an @")
    }

    #[step]
    fn done(&self) -> Result<()> {
        Ok(())
    }
}

fn main() {
    let _ = Signup.execute_sync(&Context::new());
}
