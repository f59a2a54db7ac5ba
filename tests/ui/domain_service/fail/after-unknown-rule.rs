use flext::prelude::*;

struct Signup;

#[domain_service]
impl Signup {
    #[business_rule]
    fn email_format(&self) -> RuleResult {
        Ok(())
    }

    #[business_rule(after = email_fromat)]
    fn password_policy(&self) -> RuleResult {
        Ok(())
    }

    #[step]
    fn done(&self) -> Result<()> {
        Ok(())
    }
}

fn main() {
    let _ = Signup.execute_sync(&Context::new());
}
