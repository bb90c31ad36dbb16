//! One module per subcommand: `pub async fn run(args, &Ctx) -> Result<Outcome>`.

pub mod backup;
pub mod load_csv;
pub mod restore;
pub mod schema;
