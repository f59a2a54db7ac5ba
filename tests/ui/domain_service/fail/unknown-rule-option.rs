use flext::prelude::*;

struct Signup;

#[domain_service]
impl Signup {
    #[business_rule(cod = "signup.always")]
    fn always(&self) -> RuleResult {
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
