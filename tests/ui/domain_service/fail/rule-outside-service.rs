use flext::prelude::*;

struct Signup;

impl Signup {
    #[business_rule]
    fn always(&self) -> RuleResult {
        Ok(())
    }
}

fn main() {
    let _ = Signup.always();
}
