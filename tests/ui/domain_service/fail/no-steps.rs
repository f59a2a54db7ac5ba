use flext::prelude::*;

struct Signup;

#[domain_service]
impl Signup {
    #[business_rule]
    fn always(&self) -> RuleResult {
        Ok(())
    }
}

fn main() {
    let _ = Signup.execute_sync(&Context::new());
}
