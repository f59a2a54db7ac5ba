use flext::prelude::*;

struct PlaceOrder;

#[domain_service]
impl PlaceOrder {
    #[step(undo = relase)]
    fn reserve(&self) -> Result<u32> {
        Ok(3)
    }

    fn release(&self, reserved: &u32) -> Result<()> {
        let _ = reserved;
        Ok(())
    }

    #[step]
    fn charge(&self, reserved: &u32) -> Result<u64> {
        Ok(u64::from(*reserved) * 250)
    }
}

fn main() {
    let _ = PlaceOrder.execute_sync(&Context::new());
}
