use flext::prelude::*;

struct Signup;

#[domain_service]
impl Signup {
    #[step]
    fn create(&self, email: String) -> Result<String> {
        Ok(email)
    }
}

fn main() {
    let _ = Signup.execute_sync(&Context::new());
}
