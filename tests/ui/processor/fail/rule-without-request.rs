use flext::prelude::*;
use flext::service::ServiceProcessor;

struct Signups;

#[business_rules]
impl ServiceProcessor for Signups {
    type Request = String;
    type Domain = String;
    type Response = String;

    fn name(&self) -> &str {
        "signups"
    }

    // A processor's rule checks the request: it must take it.
    #[business_rule(code = "signup.open")]
    fn open(&self) -> RuleResult {
        Ok(())
    }

    fn process(&self, email: &String, _: &Context) -> Result<String> {
        Ok(email.to_lowercase())
    }

    fn build(&self, email: String, _: Uuid) -> String {
        email
    }
}

fn main() {
    let out = Signups.run(&"A@X".to_owned(), &Context::new()).unwrap();
    assert_eq!(out, "a@x");
}
