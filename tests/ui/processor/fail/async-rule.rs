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

    #[business_rule(code = "signup.email")]
    async fn has_at(&self, email: &String) -> RuleResult {
        ensure!(email.contains('@'), "an email needs an @")
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
