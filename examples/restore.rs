//! Restore a face from a box-inpainting measurement with the library API.
//!
//! cargo run --release --example restore -- assets/samples/009521.png restored.png

use diffinv::cpu::image_io::{load_image, save_image, Fit};
use diffinv::cpu::ops::{build, measure, Task, TaskParams};
use diffinv::cpu::solve::{restore, Method, Settings};
use diffinv::cpu::unet::{load_model, ModelSource};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (input, output) =
        (args.get(1).map_or("assets/samples/009521.png", |s| s), args.get(2).map_or("restored.png", |s| s));
    let model = load_model(&ModelSource::Default, None)?; // the shipped 64x64 face model
    let clean = load_image(input.as_ref(), Fit::Resize(64))?; // [-1, 1], 1 x 3 x 64 x 64
    let op = build(Task::InpaintBox, &TaskParams::default(), clean.shape(), 0, 0)?; // a seeded 32 px hole
    let y = measure(&op, &clean, 0.05, 0, 0)?; // y = A x + 0.05 n
    let settings = Settings { steps: Some(100), ..Default::default() }; // a respaced 100-step DPS
    let out = restore(Some(&model), Method::Dps, Task::InpaintBox, &settings, &op, &y, 0.05, 0, 0, &mut |_, _| true)?;
    save_image(output.as_ref(), &out.x, 0)?;
    println!("wrote {output} ({} network evaluations)", out.nfe);
    Ok(())
}
