// Generated code names the runtime through `crate = ...` when flext is renamed.
extern crate flext as domain;

struct Ping;

#[domain::domain_service(crate = domain)]
impl Ping {
    #[step]
    fn pong(&self) -> domain::Result<&'static str> {
        Ok("pong")
    }
}

fn main() {
    use domain::SyncDomainService;
    assert_eq!(Ping.execute_sync(&domain::Context::new()).unwrap(), "pong");
}
