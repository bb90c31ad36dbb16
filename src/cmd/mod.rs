//! One module per subcommand: `pub async fn run(args, &Ctx) -> Result<Outcome>`.

pub mod load_csv;
pub mod schema;
