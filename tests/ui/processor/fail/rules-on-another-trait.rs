use flext::prelude::*;

struct Signups;

trait Check {
    fn check(&self) -> bool;
}

#[business_rules]
impl Check for Signups {
    fn check(&self) -> bool {
        true
    }

    #[business_rule]
    fn open(&self, email: &String) -> RuleResult {
        ensure!(!email.is_empty(), "empty")
    }
}

fn main() {
    assert!(Signups.check());
}
