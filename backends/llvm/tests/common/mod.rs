//! Shared by the integration tests: assembling, verifying, running.

#![allow(dead_code)]

use std::sync::Arc;

use bpfvm_engine::asm::assemble;
use bpfvm_engine::backend::{
    execute_report, Backend, CompileError, CompileOptions, CompiledCode, RunEnv, RunReport,
};
use bpfvm_engine::helpers::Helpers;
use bpfvm_engine::interp::Interpreter;
use bpfvm_engine::program::Program;
use bpfvm_engine::verifier::{verify, VerifyOptions};

pub fn program(text: &str) -> Arc<Program> {
    let insns = assemble(text).unwrap_or_else(|e| panic!("assembling:\n{text}\n{e}"));
    Arc::new(verify(insns, &VerifyOptions::default()).expect("verifies"))
}

/// A backend compiled at a fixed optimisation level.
pub struct AtOpt<B>(pub B, pub u8);

impl<B: Backend> Backend for AtOpt<B> {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn compile(
        &self,
        program: &Arc<Program>,
        opts: &CompileOptions,
    ) -> Result<Box<dyn CompiledCode>, CompileError> {
        let mut o = opts.clone();
        o.opt_level = self.1;
        self.0.compile(program, &o)
    }
}

pub fn run(
    backend: &dyn Backend,
    program: &Arc<Program>,
    opts: &CompileOptions,
    helpers: &Helpers,
    mem: &mut [u8],
) -> RunReport {
    let code = backend.compile(program, opts).expect("compiles");
    let table = helpers.table();
    let env = RunEnv {
        helpers: &table,
        regions: &[],
        host: std::ptr::null_mut(),
    };
    execute_report(code.as_ref(), &env, mem)
}

/// Runs on the interpreter and on `backend` and compares everything.
pub fn same_as_interp(backend: &dyn Backend, text: &str, opts: &CompileOptions, mem: &[u8]) {
    let p = program(text);
    let helpers = Helpers::new();
    let mut m1 = mem.to_vec();
    let mut m2 = mem.to_vec();
    let want = run(&Interpreter, &p, opts, &helpers, &mut m1);
    let got = run(backend, &p, opts, &helpers, &mut m2);
    assert_eq!(
        got,
        want,
        "{} differs from interp on\n{text}",
        backend.name()
    );
    assert_eq!(m2, m1, "memory differs");
}
