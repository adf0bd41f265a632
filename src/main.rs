// TEMPORARY wiring of `aksup simulator` for the sim-arm branch; the lead owns the real CLI.
use clap::Parser as _;

#[derive(clap::Parser)]
#[command(name = "aksup")]
enum Cli {
    /// Run the Azure Stack Hub stamp simulator.
    Simulator(aksup::cli::simulator::SimulatorArgs),
}

#[tokio::main]
async fn main() {
    let code = match Cli::parse() {
        Cli::Simulator(args) => match aksup::cli::simulator::run(args).await {
            Ok(()) => 0,
            Err(error) => {
                eprintln!("error: {error:#}");
                2
            }
        },
    };
    std::process::exit(code);
}
