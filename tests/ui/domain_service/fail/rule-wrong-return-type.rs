use flext::prelude::*;

struct Signup {
    email: String,
}

#[domain_service]
impl Signup {
    #[business_rule]
    fn email_has_at(&self) -> bool {
        self.email.contains('@')
    }

    #[step]
    fn done(&self) -> Result<()> {
        Ok(())
    }
}

fn main() {
    let _ = Signup { email: String::new() }.execute_sync(&Context::new());
}
