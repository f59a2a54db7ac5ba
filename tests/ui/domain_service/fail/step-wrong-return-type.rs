use flext::prelude::*;

struct Signup;

#[domain_service]
impl Signup {
    #[step]
    fn create(&self) -> u64 {
        7
    }

    #[step]
    fn done(&self, id: u64) -> Result<u64> {
        Ok(id)
    }
}

fn main() {
    let _ = Signup.execute_sync(&Context::new());
}
