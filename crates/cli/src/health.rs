//! `switchboard healthcheck [URL]`: asks the server's `/healthz` and exits
//! 0 when it answers 200, 1 otherwise: a health probe for containers and
//! supervisors that have no HTTP client (the Docker image has no curl).

use crate::http::ServerArgs;
use anyhow::bail;
use hyper::Method;

#[derive(clap::Args, Debug)]
pub struct HealthArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The path to ask (`/readyz` for readiness).
    #[arg(long, default_value = "/healthz")]
    pub path: String,
}

pub fn run(args: HealthArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let answer = runtime.block_on(args.server.request(Method::GET, &args.path, None, None))?;
    if !answer.status.is_success() {
        bail!("{} answered {}: {}", args.path, answer.status, answer.excerpt());
    }
    println!("{}", answer.excerpt());
    Ok(())
}
