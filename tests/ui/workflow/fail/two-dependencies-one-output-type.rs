use flext::prelude::*;

struct Tally;

#[workflow]
impl Tally {
    #[workflow_step]
    async fn b(&self) -> Result<u32> {
        Ok(11)
    }

    #[workflow_step]
    async fn c(&self) -> Result<u32> {
        Ok(101)
    }

    // Both dependencies return a `u32`, and `left` names neither.
    #[workflow_step(depends_on = [b, c])]
    async fn d(&self, left: &u32) -> Result<u32> {
        Ok(*left)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let run = Tally.run(&Context::new()).await;
    assert!(run.is_success());
}
