use flext::prelude::*;

struct Signup;

#[domain_service]
impl Signup {
    #[business_rule]
    fn always(&self) -> RuleResult {
        Ok(())
    }
}

fn main() {}
