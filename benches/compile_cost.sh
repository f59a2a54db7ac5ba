#!/usr/bin/env bash
# Compile cost of flext's macros against the same crate written by hand.
#
#   bash benches/compile_cost.sh            # N_SERVICES=50 N_COMMANDS=50 N_SAGAS=10 RUNS=3
#
# Generates, under target/compile-cost/, a workspace with two library crates:
#   flext_side  50 `#[domain_service]`s (two rules, two steps), 50 `#[command]`s with an
#               async `#[command_handler]`, 10 `#[saga]`s (a compensated step, then one more)
#   hand_side   the twin a user writes without flext: the same structs and methods, each
#               service's `execute_sync` with its span, rule collection and `?` chain, a
#               name -> JSON dispatch `match` over the commands, and each saga as an async
#               function that logs its input and outputs as JSON and compensates by hand.
# Both depend on the same crates (flext, serde, serde_json, tracing), built once first.
# Then, for each side, RUNS times: a clean build of that crate alone (`cargo clean -p`,
# dependencies kept) and an incremental rebuild after changing one service's body.
# Prints the median seconds and the ratios flext / hand-written.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
N_SERVICES=${N_SERVICES:-50}
N_COMMANDS=${N_COMMANDS:-50}
N_SAGAS=${N_SAGAS:-10}
RUNS=${RUNS:-3}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
dir=$root/target/compile-cost
rm -rf "$dir/flext_side" "$dir/hand_side"
mkdir -p "$dir/flext_side/src" "$dir/hand_side/src"

cat > "$dir/Cargo.toml" <<EOF
[workspace]
members = ["flext_side", "hand_side"]
resolver = "3"

[workspace.dependencies]
flext = { path = "$root" }
serde = { version = "1", features = ["derive"] }
serde_json = "1"
tracing = "0.1"
EOF
for side in flext_side hand_side; do
cat > "$dir/$side/Cargo.toml" <<EOF
[package]
name = "$side"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
flext.workspace = true
serde.workspace = true
serde_json.workspace = true
tracing.workspace = true
EOF
done
cp "$root/Cargo.lock" "$dir/Cargo.lock"

# ---------------------------------------------------------------- flext side
{
echo 'use flext::prelude::*;'
for i in $(seq 0 $((N_SERVICES - 1))); do cat <<EOF
pub struct Service$i { pub amount: u64 }

#[domain_service]
impl Service$i {
    #[business_rule(code = "s$i.positive")]
    fn positive(&self) -> RuleResult { ensure!(self.amount > 0, "amount must be positive") }
    #[business_rule(code = "s$i.limit")]
    fn limit(&self) -> RuleResult { ensure!(self.amount < 1_000_000, "over the limit") }
    #[step]
    fn fee(&self) -> Result<u64> { Ok(self.amount / 100 + $i) }
    #[step]
    fn total(&self, fee: u64) -> Result<u64> { Ok(self.amount + fee) }
}
EOF
done
} > "$dir/flext_side/src/services.rs"
{
echo 'use flext::prelude::*;'
echo 'use serde::{Deserialize, Serialize};'
for i in $(seq 0 $((N_COMMANDS - 1))); do cat <<EOF
#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Command$i { pub n: u64 }

#[command_handler]
async fn handle_command$i(command: Command$i, ctx: &Context) -> Result<u64> {
    let _ = ctx;
    Ok(command.n + $i)
}
EOF
done
} > "$dir/flext_side/src/commands.rs"
{
echo 'use flext::prelude::*;'
echo 'use serde::{Deserialize, Serialize};'
for i in $(seq 0 $((N_SAGAS - 1))); do cat <<EOF
#[derive(Serialize, Deserialize)]
pub struct Saga$i { pub qty: u32 }
#[derive(Serialize, Deserialize)]
pub struct Reservation$i(pub u32);

#[saga]
impl Saga$i {
    #[saga_step(compensate = release)]
    async fn reserve(&self) -> Result<Reservation$i> { Ok(Reservation$i(self.qty)) }
    async fn release(&self, reservation: &Reservation$i) -> Result<()> { let _ = reservation.0; Ok(()) }
    #[saga_step(retries = 2)]
    async fn charge(&self, reservation: &Reservation$i) -> Result<u64> { Ok(u64::from(reservation.0) * $((i + 1))) }
}
EOF
done
} > "$dir/flext_side/src/sagas.rs"
printf 'pub mod commands;\npub mod sagas;\npub mod services;\n' > "$dir/flext_side/src/lib.rs"

# ---------------------------------------------------------------- hand-written side
{
echo 'use flext::{Context, Error, Result, RuleResult, RuleViolation, ensure};'
for i in $(seq 0 $((N_SERVICES - 1))); do cat <<EOF
pub struct Service$i { pub amount: u64 }

impl Service$i {
    fn positive(&self) -> RuleResult { ensure!(self.amount > 0, "amount must be positive") }
    fn limit(&self) -> RuleResult { ensure!(self.amount < 1_000_000, "over the limit") }
    fn fee(&self) -> Result<u64> { Ok(self.amount / 100 + $i) }
    fn total(&self, fee: u64) -> Result<u64> { Ok(self.amount + fee) }

    pub fn execute_sync(&self, ctx: &Context) -> Result<u64> {
        let span = tracing::info_span!("domain_service", service = "Service$i", correlation_id = %ctx.correlation_id());
        let _entered = span.enter();
        let mut violations: Vec<RuleViolation> = Vec::new();
        if let Err(v) = self.positive() { violations.push(v.with_code("s$i.positive")); }
        if let Err(v) = self.limit() { violations.push(v.with_code("s$i.limit")); }
        if !violations.is_empty() { return Err(Error::rule_violations(violations)); }
        let fee = self.fee()?;
        self.total(fee)
    }
}
EOF
done
} > "$dir/hand_side/src/services.rs"
{
echo 'use flext::{Context, Error, Result};'
echo 'use serde::{Deserialize, Serialize};'
for i in $(seq 0 $((N_COMMANDS - 1))); do cat <<EOF
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Command$i { pub n: u64 }

pub async fn handle_command$i(command: Command$i, ctx: &Context) -> Result<u64> {
    let _ = ctx;
    Ok(command.n + $i)
}
EOF
done
echo 'pub async fn send_json(name: &str, json: &str, ctx: &Context) -> Result<serde_json::Value> {'
echo '    let bad = |e: serde_json::Error| Error::validation("input.invalid", e.to_string());'
echo '    match name {'
for i in $(seq 0 $((N_COMMANDS - 1))); do
echo "        \"Command$i\" => serde_json::to_value(handle_command$i(serde_json::from_str(json).map_err(bad)?, ctx).await?).map_err(bad),"
done
echo '        _ => Err(Error::not_found("bus.unknown", name.to_owned())),'
echo '    }'
echo '}'
} > "$dir/hand_side/src/commands.rs"
{
echo 'use flext::{Error, Result};'
echo 'use serde::{Deserialize, Serialize};'
for i in $(seq 0 $((N_SAGAS - 1))); do cat <<EOF
#[derive(Serialize, Deserialize)]
pub struct Saga$i { pub qty: u32 }
#[derive(Serialize, Deserialize)]
pub struct Reservation$i(pub u32);

impl Saga$i {
    async fn reserve(&self) -> Result<Reservation$i> { Ok(Reservation$i(self.qty)) }
    async fn release(&self, reservation: &Reservation$i) -> Result<()> { let _ = reservation.0; Ok(()) }
    async fn charge(&self, reservation: &Reservation$i) -> Result<u64> { Ok(u64::from(reservation.0) * $((i + 1))) }

    pub async fn run(&self, log: &mut Vec<serde_json::Value>) -> Result<u64> {
        let json = |e: serde_json::Error| Error::internal("saga.json", e.to_string());
        log.push(serde_json::to_value(self).map_err(json)?);
        let reservation = self.reserve().await?;
        log.push(serde_json::to_value(&reservation).map_err(json)?);
        let mut attempts = 0;
        loop {
            match self.charge(&reservation).await {
                Ok(total) => { log.push(serde_json::to_value(total).map_err(json)?); return Ok(total); }
                Err(_) if attempts < 2 => attempts += 1,
                Err(e) => { self.release(&reservation).await?; return Err(e); }
            }
        }
    }
}
EOF
done
} > "$dir/hand_side/src/sagas.rs"
printf 'pub mod commands;\npub mod sagas;\npub mod services;\n' > "$dir/hand_side/src/lib.rs"

cd "$dir"
echo "building dependencies once..."
cargo build --quiet -p flext_side -p hand_side

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
measure() { # side, kind -> seconds
    local side=$1 kind=$2 start end
    if [ "$kind" = clean ]; then
        cargo clean --quiet -p "$side"
    else
        # Change one service's body: a different constant in `fee`.
        edits=$((edits + 1))
        sed -i "0,/Ok(self.amount \/ 100 + 0[0-9]*)/s//Ok(self.amount \/ 100 + 0$edits)/" "$side/src/services.rs"
    fi
    start=$(now)
    cargo build --quiet -p "$side"
    end=$(now)
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f\n", b - a }'
}
sed -i 's|Ok(self.amount / 100 + 0)|Ok(self.amount / 100 + 00)|' flext_side/src/services.rs hand_side/src/services.rs

edits=0
declare -A result
for side in flext_side hand_side; do
    for kind in clean incremental; do
        samples=$(for _ in $(seq "$RUNS"); do measure "$side" "$kind"; done)
        result[$side.$kind]=$(echo "$samples" | median)
    done
done
printf '\n%-12s %10s %10s\n' "" "clean (s)" "incr. (s)"
for side in flext_side hand_side; do
    printf '%-12s %10.2f %10.2f\n' "$side" "${result[$side.clean]}" "${result[$side.incremental]}"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
printf '%-12s %10s %10s   (targets: clean <= 1.30, incremental <= 1.20)\n' "ratio" \
    "$(ratio "${result[flext_side.clean]}" "${result[hand_side.clean]}")" \
    "$(ratio "${result[flext_side.incremental]}" "${result[hand_side.incremental]}")"
