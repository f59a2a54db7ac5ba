use flext::prelude::*;

struct Greet;

#[workflow]
impl Greet {
    #[workflow_step]
    async fn count(&self) -> Result<u32> {
        Ok(3)
    }

    // Takes a `&str`, which only a step returning `String` gives.
    #[workflow_step(depends_on = [count])]
    async fn greet(&self, name: &str) -> Result<String> {
        Ok(format!("hello {name}"))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let run = Greet.run(&Context::new()).await;
    assert!(run.is_success());
}
