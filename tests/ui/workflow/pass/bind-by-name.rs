use flext::prelude::*;

// Two dependencies return a `u32`: each parameter named after a step takes that step's
// output.
struct Tally;

#[workflow]
impl Tally {
    #[workflow_step]
    async fn a(&self) -> Result<u32> {
        Ok(1)
    }

    #[workflow_step(depends_on = [a])]
    async fn b(&self, a: &u32) -> Result<u32> {
        Ok(*a + 10)
    }

    #[workflow_step(depends_on = [a])]
    async fn c(&self, a: &u32) -> Result<u32> {
        Ok(*a + 100)
    }

    #[workflow_step(depends_on = [b, c])]
    async fn d(&self, c: &u32, b: &u32) -> Result<String> {
        Ok(format!("b={b} c={c}"))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let run = Tally.run(&Context::new()).await;
    assert!(run.is_success(), "{run:?}");
    assert_eq!(run.output::<String>("d").unwrap(), "b=11 c=101");
}
