use flext::prelude::*;

struct Signup;

// Every mistake is reported in one compile, each at its own token.
#[domain_service]
impl Signup {
    #[business_rule(order = 3)]
    fn a(&self) -> RuleResult {
        Ok(())
    }

    #[business_rule(order = 3, after = c)]
    fn b(&self) -> RuleResult {
        Ok(())
    }

    #[step]
    fn create(&self, x: u8) -> Result<u8> {
        Ok(x)
    }
}

fn main() {
    let _ = Signup.execute_sync(&Context::new());
}
