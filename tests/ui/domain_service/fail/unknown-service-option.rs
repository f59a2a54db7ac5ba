use flext::prelude::*;

struct Signup;

#[domain_service(fail_fsat)]
impl Signup {
    #[step]
    fn done(&self) -> Result<()> {
        Ok(())
    }
}

fn main() {
    let _ = Signup.execute_sync(&Context::new());
}
