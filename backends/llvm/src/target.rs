//! LLVM targets: one-time initialisation, target machines for the host, for
//! AOT cross-compilation and for NVPTX, the optimisation pipeline, and
//! emission of objects and assembly.

use std::ffi::{c_char, CString};
use std::sync::OnceLock;

use inkwell::module::Module;
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{
    CodeModel, FileType, InitializationConfig, RelocMode, Target, TargetMachine, TargetTriple,
};
use inkwell::OptimizationLevel;

use crate::{fail, Tier};

/// The NVPTX triple `emit_ptx` compiles for.
pub(crate) const NVPTX_TRIPLE: &str = "nvptx64-nvidia-cuda";

/// LLVM options set once per process, before the first compile.
///
/// `-instcombine-negator-enabled=false`: LLVM 19's InstCombine negator can
/// push a negation into a loop's phi and back forever (a 32-bit `neg` of a
/// loop-carried register that is then shifted: llvm/llvm-project#96012,
/// fixed in LLVM 20), an endless compile that also grows memory. Without
/// the negator `0 - x` and `y - x` stay as they are: of the 15 benchmark
/// programs 14 compile to the same machine code, crc32 differs by a few
/// instructions at the same speed (BENCHMARKS.md), and the hang is gone
/// (tests/optimizer_hangs.rs).
const LLVM_OPTIONS: [&str; 1] = ["-instcombine-negator-enabled=false"];

/// Initialises the LLVM targets this crate uses and its options, once per
/// process. The options are global to LLVM: a host that embeds LLVM for
/// itself gets them too.
fn init() -> Result<(), String> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| {
        let config = InitializationConfig::default();
        Target::initialize_x86(&config);
        Target::initialize_aarch64(&config);
        Target::initialize_nvptx(&config);
        set_llvm_options();
        Ok(())
    })
    .clone()
}

fn set_llvm_options() {
    let args: Vec<CString> = std::iter::once("bpfvm")
        .chain(LLVM_OPTIONS)
        .map(|a| CString::new(a).expect("no NUL in the options"))
        .collect();
    let argv: Vec<*const c_char> = args.iter().map(|a| a.as_ptr()).collect();
    let overview = c"bpfvm";
    // SAFETY: argv holds args.len() valid NUL-terminated strings that live
    // across the call; LLVM copies what it keeps. The C API parses with
    // errors sent to a null stream (no exit on an unknown option), and
    // this runs once per process (OnceLock), so no option occurs twice.
    unsafe {
        inkwell::llvm_sys::support::LLVMParseCommandLineOptions(
            argv.len() as i32,
            argv.as_ptr(),
            overview.as_ptr(),
        );
    }
}

/// What to build a target machine for.
#[derive(Clone, Debug, Default)]
pub(crate) struct MachineSpec {
    /// `None`: the host triple.
    pub triple: Option<String>,
    /// `None`: the host CPU when the triple is the host's, else `generic`.
    pub cpu: Option<String>,
    /// `None`: the host features when the CPU is the host's, else none.
    pub features: Option<String>,
}

fn opt_level(level: u8) -> OptimizationLevel {
    match level {
        0 => OptimizationLevel::None,
        1 => OptimizationLevel::Less,
        2 => OptimizationLevel::Default,
        _ => OptimizationLevel::Aggressive,
    }
}

/// A target machine for `spec` (position-independent code, small code
/// model: every reference inside an object is PC-relative, which the
/// in-process loader relies on).
pub(crate) fn machine(
    tier: Tier,
    spec: &MachineSpec,
    level: u8,
) -> Result<TargetMachine, crate::CompileError> {
    init().map_err(|e| fail(tier, e))?;
    let host = spec.triple.is_none();
    let triple = match &spec.triple {
        Some(t) => TargetTriple::create(t),
        None => TargetMachine::get_default_triple(),
    };
    let target = Target::from_triple(&triple).map_err(|e| {
        fail(
            tier,
            format!("target {}: {}", triple.as_str().to_string_lossy(), e),
        )
    })?;
    let (cpu, features) = match (&spec.cpu, host) {
        (Some(cpu), _) => (cpu.clone(), spec.features.clone().unwrap_or_default()),
        (None, true) => (
            TargetMachine::get_host_cpu_name().to_string(),
            spec.features
                .clone()
                .unwrap_or_else(|| TargetMachine::get_host_cpu_features().to_string()),
        ),
        (None, false) => (
            "generic".to_string(),
            spec.features.clone().unwrap_or_default(),
        ),
    };
    target
        .create_target_machine(
            &triple,
            &cpu,
            &features,
            opt_level(level),
            RelocMode::PIC,
            CodeModel::Small,
        )
        .ok_or_else(|| {
            fail(
                tier,
                format!(
                    "cannot create a target machine for {} (cpu `{cpu}`)",
                    triple.as_str().to_string_lossy()
                ),
            )
        })
}

/// The NVPTX target machine for `sm` (e.g. `sm_70`).
pub(crate) fn ptx_machine(sm: &str) -> Result<TargetMachine, crate::CompileError> {
    let valid = sm.strip_prefix("sm_").is_some_and(|n| {
        let digits = n.strip_suffix('a').unwrap_or(n);
        !digits.is_empty() && digits.len() <= 3 && digits.bytes().all(|b| b.is_ascii_digit())
    });
    if !valid {
        return Err(fail(
            Tier::Ptx,
            format!("`{sm}` is not a GPU architecture of the form sm_XX (e.g. sm_70)"),
        ));
    }
    let spec = MachineSpec {
        triple: Some(NVPTX_TRIPLE.to_string()),
        cpu: Some(sm.to_string()),
        features: None,
    };
    machine(Tier::Ptx, &spec, 3)
}

/// Sets the module's triple and data layout to the machine's.
pub(crate) fn configure(module: &Module, machine: &TargetMachine) {
    module.set_triple(&machine.get_triple());
    module.set_data_layout(&machine.get_target_data().get_data_layout());
}

/// Verifies the module, then runs the `default<ON>` pipeline on it.
pub(crate) fn optimize(
    tier: Tier,
    module: &Module,
    machine: &TargetMachine,
    level: u8,
) -> Result<(), crate::CompileError> {
    module
        .verify()
        .map_err(|e| fail(tier, format!("generated invalid LLVM IR: {e}")))?;
    // At O2 and O3, range-check elimination first: it splits loops whose
    // checked accesses walk an induction variable into a main loop
    // without the checks (which the vectorisers can then handle) and
    // short pre/post loops that keep them. It needs the checks as plain
    // branches, before the default pipeline merges them into selects.
    let pipeline = match level.min(3) {
        l @ (2 | 3) => format!(
            "function(sroa,early-cse,instcombine<no-verify-fixpoint>,loop-simplify,lcssa,irce),default<O{l}>"
        ),
        l => format!("default<O{l}>"),
    };
    module
        .run_passes(&pipeline, machine, PassBuilderOptions::create())
        .map_err(|e| fail(tier, format!("running {pipeline}: {e}")))
}

/// Emits an object file or assembly text for the module.
pub(crate) fn emit(
    tier: Tier,
    module: &Module,
    machine: &TargetMachine,
    kind: FileType,
) -> Result<Vec<u8>, crate::CompileError> {
    machine
        .write_to_memory_buffer(module, kind)
        .map(|b| b.as_slice().to_vec())
        .map_err(|e| fail(tier, format!("code generation: {e}")))
}
