use flext::prelude::*;

#[command_handler]
fn create_user(ctx: &Context) -> Result<u64> {
    let _ = ctx;
    Ok(1)
}

fn main() {
    let bus = Bus::builder().build().unwrap();
    let _ = bus.send_json("CreateUser", "{}", &Context::new());
}
