use flext::prelude::*;

struct Account;
struct User;

struct Register;

#[domain_service]
impl Register {
    #[step]
    fn create(&self) -> Result<User> {
        Ok(User)
    }

    // Takes an `Account`, but the previous step produces a `User`.
    #[step]
    fn welcome(&self, account: Account) -> Result<Account> {
        Ok(account)
    }
}

fn main() {
    let _ = Register.execute_sync(&Context::new());
}
