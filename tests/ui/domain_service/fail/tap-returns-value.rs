use flext::prelude::*;

struct Signup;

#[domain_service]
impl Signup {
    #[step]
    fn create(&self) -> Result<u64> {
        Ok(7)
    }

    #[tap]
    fn log(&self, id: &u64) -> Result<()> {
        println!("{id}");
        Ok(())
    }
}

fn main() {
    let _ = Signup.execute_sync(&Context::new());
}
