//! [`Model`]: a diffusion model loaded once as a backend-neutral description, from which each
//! device builds its own layers on first use.

use crate::assets;
use crate::device::GpuCache;
use crate::error::Result;
use diffinv_cpu::unet::UNet;
use diffinv_model::checkpoint::Checkpoint;
use diffinv_model::{DiffusionSettings, ModelDesc, RandomWeights, UNetConfig, UNetDesc};
use std::path::Path;
use std::sync::OnceLock;

/// A diffusion model: its architecture, its weights (as a description every backend builds
/// from), its diffusion settings, and the layers built for each device so far.
///
/// ```
/// let model = diffinv::Model::shipped()?;
/// assert_eq!(model.image_size(), 64);
/// println!("{} parameters, {:.1} GFLOP per 64 px forward", model.num_params(), model.gflop());
/// # Ok::<(), diffinv::Error>(())
/// ```
pub struct Model {
    desc: ModelDesc,
    /// Random weights are drawn again when a device needs them instead of being kept.
    random_seed: Option<u64>,
    cpu: OnceLock<UNet>,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) gpus: GpuCache,
}

impl Model {
    fn new(desc: ModelDesc) -> Self {
        Model { desc, random_seed: None, cpu: OnceLock::new(), gpus: GpuCache::default() }
    }

    /// The shipped 64x64 face model (an ADM UNet trained on CelebA; non-commercial research use
    /// only), compiled into the library.
    ///
    /// # Errors
    /// [`crate::Error::Unavailable`] in a build without the `embedded-assets` feature.
    pub fn shipped() -> Result<Model> {
        Ok(Model::new(ModelDesc::read(&assets::model()?, None)?))
    }

    /// Loads a checkpoint (safetensors, or a PyTorch `.pt` / `.pth` read without running any
    /// code) or a diffusers `UNet2DModel` folder (`config.json`, `diffusion_pytorch_model.*`,
    /// `scheduler_config.json`). `config` (a preset such as `ffhq256`, `imagenet256` or
    /// `celeba64`, a JSON file, or inline JSON) overrides the file's own metadata; a PyTorch file
    /// carries none, and is recognised by its tensor shapes when it is one of the presets.
    ///
    /// ```no_run
    /// let model = diffinv::Model::load("ffhq_10m.pt", None)?; // recognised as ffhq256
    /// assert_eq!(model.image_size(), 256);
    /// let ddpm = diffinv::Model::load("ddpm-celebahq-256", None)?; // a diffusers folder
    /// assert_eq!(ddpm.config().family_name(), "diffusers");
    /// # Ok::<(), diffinv::Error>(())
    /// ```
    ///
    /// # Errors
    /// The file cannot be read or parsed, has no config when none is given and is no preset, or its tensors do
    /// not match the config (every tensor is checked: present, shaped, finite, used).
    pub fn load(path: impl AsRef<Path>, config: Option<&str>) -> Result<Model> {
        Ok(Model::new(ModelDesc::open(path, config)?))
    }

    /// A model from a parsed checkpoint (see [`Model::load`]).
    ///
    /// # Errors
    /// As [`Model::load`].
    pub fn from_checkpoint(ckpt: &Checkpoint, config: Option<&str>) -> Result<Model> {
        Ok(Model::new(ModelDesc::read(ckpt, config)?))
    }

    /// The architecture `config` with seeded random weights (benchmarks and tests), DDPM's
    /// 1000 linear steps. The weights are drawn when a device builds its layers, not kept.
    ///
    /// ```
    /// let cfg = diffinv::model::UNetConfig::preset("celeba64").unwrap();
    /// let model = diffinv::Model::random(&cfg, 0)?;
    /// assert_eq!(model.config(), &cfg);
    /// # Ok::<(), diffinv::Error>(())
    /// ```
    ///
    /// # Errors
    /// An invalid config.
    pub fn random(config: &UNetConfig, seed: u64) -> Result<Model> {
        config.validate()?;
        // The kept description holds the architecture only; the weights come from the seed.
        let desc = UNetDesc::read(config, &mut diffinv_model::weights::ShapeOnly)?;
        let diffusion = DiffusionSettings::for_config(config);
        let file = format!("random (seed {seed})");
        let mut m =
            Model::new(ModelDesc { desc, diffusion, file, format: "random", dtypes: vec![], config_source: "given" });
        m.random_seed = Some(seed);
        Ok(m)
    }

    /// The architecture.
    pub fn config(&self) -> &UNetConfig {
        self.desc.config()
    }

    /// The diffusion settings it was trained with.
    pub fn diffusion(&self) -> &DiffusionSettings {
        &self.desc.diffusion
    }

    /// The side of the square images it was trained on.
    pub fn image_size(&self) -> usize {
        self.config().image_size
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.desc.desc.params
    }

    /// GFLOP of one forward pass at the model's image size.
    pub fn gflop(&self) -> f64 {
        self.gflop_at(self.image_size())
    }

    /// GFLOP of one forward pass of one `size x size` image.
    pub fn gflop_at(&self, size: usize) -> f64 {
        self.desc.desc.gflop(size)
    }

    /// The file (or name) it came from.
    pub fn file(&self) -> &str {
        &self.desc.file
    }

    /// Where the architecture came from: `given` (a preset or JSON passed in), `metadata` (the
    /// file's own), `config.json` (a diffusers folder's) or `detected` (a bare `state_dict`
    /// recognised as a preset by its tensor shapes).
    pub fn config_source(&self) -> &'static str {
        self.desc.config_source
    }

    /// `safetensors`, `pytorch-zip`, `pytorch-legacy` or `random`.
    pub fn format(&self) -> &'static str {
        self.desc.format
    }

    /// Stored element types and how many tensors use each.
    pub fn dtypes(&self) -> &[(String, usize)] {
        &self.desc.dtypes
    }

    /// Runs `f` on the backend-neutral description (architecture and f32 weights); a random
    /// model's weights are drawn for the call.
    pub fn with_description<R>(&self, f: impl FnOnce(&UNetDesc) -> R) -> R {
        match self.random_seed {
            None => f(&self.desc.desc),
            Some(seed) => {
                let d = UNetDesc::read(self.config(), &mut RandomWeights::new(seed)).expect("validated when made");
                f(&d)
            }
        }
    }

    /// The CPU layers, built on first use and kept.
    pub fn cpu(&self) -> &UNet {
        self.cpu.get_or_init(|| self.with_description(UNet::from_desc))
    }
}
