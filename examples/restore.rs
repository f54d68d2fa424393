//! Restore a face from a box-inpainting measurement with the library API.
//!
//! cargo run --release --example restore -- assets/samples/009521.png restored.png

use diffinv::{Device, Method, Model, Restorer, Task};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (input, output) =
        (args.get(1).map_or("assets/samples/009521.png", |s| s), args.get(2).map_or("restored.png", |s| s));
    let model = Model::shipped()?; // the 64x64 face model compiled into the library
    let clean = diffinv::image::load_resized(input, model.image_size())?; // H x W x 3 in [0, 1]
    let y = Restorer::new(&model).task(Task::InpaintBox).seed(0).measure(clean.view())?; // a seeded 32 px hole
    let out = Restorer::new(&model)
        .task(Task::InpaintBox)
        .method(Method::DiffPir)
        .steps(50)
        .noise(0.05)
        .seed(0)
        .device(Device::Cpu)
        .on_step(|step, total| {
            eprint!("\rstep {step}/{total}");
            true
        })
        .run(y.view())?;
    diffinv::image::save(output, out.image.view())?;
    let q = diffinv::metrics::Metrics::shipped()?.compare(clean.view(), out.image.view())?;
    println!("\nwrote {output} ({} network evaluations, {:.1} s): {}", out.nfe, out.seconds, q.line());
    Ok(())
}
