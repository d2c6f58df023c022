//! `mnemo bench`: placeholder replaced below.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {}
pub async fn run(_c: crate::config::Config, _a: BenchArgs) -> Result<(), String> {
    Ok(())
}
