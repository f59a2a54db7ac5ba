use flext::prelude::*;

struct PlaceOrder;

#[domain_service]
impl PlaceOrder {
    #[step]
    fn reserve(&self) -> Result<u32> {
        Ok(3)
    }

    #[tap(undo = forget)]
    fn log(&self, reserved: &u32) {
        println!("{reserved}");
    }

    fn forget(&self, reserved: &u32) -> Result<()> {
        let _ = reserved;
        Ok(())
    }
}

fn main() {
    let _ = PlaceOrder.execute_sync(&Context::new());
}
