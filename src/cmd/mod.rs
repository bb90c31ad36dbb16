//! One module per subcommand: `pub async fn run(args, &Ctx) -> Result<Outcome>`.

pub mod audit;
pub mod backup;
pub mod health;
pub mod load_csv;
pub mod maintenance;
pub mod metrics;
pub mod restore;
pub mod schema;
