use flext::prelude::*;

struct Signup;

#[domain_service(on_error = rollback)]
impl Signup {
    #[step]
    fn create(&self) -> Result<u64> {
        Ok(7)
    }

    fn roll_back(&self, error: Error) -> Error {
        error
    }
}

fn main() {
    let _ = Signup.execute_sync(&Context::new());
}
