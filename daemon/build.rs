//! Build script of the daemon: compiles the Python-symbol stub library that
//! lets the multilingual encoder's custom-op library load outside Python.
//!
//! The onnxruntime-extensions shared library Mindory installs is the Python
//! extension module of its wheel (no standalone build is published to a
//! package registry Mindory uses). It exports the plain `RegisterCustomOps`
//! entry point that ONNX Runtime calls, and never calls into Python unless
//! Python imports it, but it still names the CPython symbols below, and ONNX
//! Runtime opens it with immediate binding: without a definition for each,
//! loading fails with "undefined symbol". The stub defines every one as a
//! function that aborts, so the names resolve and any call (which would be a
//! bug) stops loudly instead of corrupting memory. `embed/use_multilingual.rs`
//! embeds the stub, writes it to a temporary file and loads it with global
//! binding before the custom-op library.

use std::path::PathBuf;

/// The CPython symbols onnxruntime-extensions 0.15.2's module leaves undefined
/// (`nm -D --undefined-only`, filtered to `Py*` and `_Py*`).
const PYTHON_SYMBOLS: &[&str] = &[
    "PyBaseObject_Type",
    "PyBuffer_Release",
    "PyByteArray_AsString",
    "PyByteArray_Size",
    "PyByteArray_Type",
    "PyBytes_AsString",
    "PyBytes_AsStringAndSize",
    "PyBytes_Size",
    "PyCFunction_Type",
    "PyCMethod_New",
    "PyCapsule_GetContext",
    "PyCapsule_GetName",
    "PyCapsule_GetPointer",
    "PyCapsule_New",
    "PyCapsule_SetContext",
    "PyCapsule_SetPointer",
    "PyCapsule_Type",
    "PyDict_Copy",
    "PyDict_DelItemString",
    "PyDict_GetItemWithError",
    "PyDict_New",
    "PyDict_Next",
    "PyDict_Size",
    "PyDict_Type",
    "PyErr_Clear",
    "PyErr_Fetch",
    "PyErr_Format",
    "PyErr_NormalizeException",
    "PyErr_Occurred",
    "PyErr_Restore",
    "PyErr_SetString",
    "PyErr_WriteUnraisable",
    "PyEval_AcquireThread",
    "PyEval_GetBuiltins",
    "PyEval_RestoreThread",
    "PyEval_SaveThread",
    "PyExc_BufferError",
    "PyExc_ImportError",
    "PyExc_IndexError",
    "PyExc_MemoryError",
    "PyExc_OverflowError",
    "PyExc_RuntimeError",
    "PyExc_SystemError",
    "PyExc_TypeError",
    "PyExc_ValueError",
    "PyException_SetCause",
    "PyException_SetContext",
    "PyException_SetTraceback",
    "PyFloat_Type",
    "PyFrame_GetBack",
    "PyFrame_GetCode",
    "PyFrame_GetLineNumber",
    "PyGILState_Ensure",
    "PyGILState_GetThisThreadState",
    "PyGILState_Release",
    "PyImport_ImportModule",
    "PyIndex_Check",
    "PyInstanceMethod_New",
    "PyInstanceMethod_Type",
    "PyList_Append",
    "PyList_GetItem",
    "PyList_New",
    "PyList_Size",
    "PyLong_AsLong",
    "PyLong_AsUnsignedLong",
    "PyLong_FromSize_t",
    "PyLong_FromSsize_t",
    "PyMem_Calloc",
    "PyMem_Free",
    "PyMethod_Type",
    "PyModule_AddObject",
    "PyModule_Create2",
    "PyModule_Type",
    "PyNumber_Check",
    "PyNumber_Long",
    "PyObject_CallFunctionObjArgs",
    "PyObject_CallObject",
    "PyObject_ClearWeakRefs",
    "PyObject_GC_UnTrack",
    "PyObject_GenericGetDict",
    "PyObject_GenericSetDict",
    "PyObject_GetAttrString",
    "PyObject_HasAttrString",
    "PyObject_IsInstance",
    "PyObject_Malloc",
    "PyObject_Repr",
    "PyObject_SetAttr",
    "PyObject_SetAttrString",
    "PyObject_SetItem",
    "PyObject_Str",
    "PyProperty_Type",
    "PySequence_Check",
    "PySequence_GetItem",
    "PySequence_Size",
    "PySequence_Tuple",
    "PyStaticMethod_New",
    "PyStaticMethod_Type",
    "PyThreadState_Clear",
    "PyThreadState_DeleteCurrent",
    "PyThreadState_Get",
    "PyThreadState_New",
    "PyThread_tss_alloc",
    "PyThread_tss_create",
    "PyThread_tss_get",
    "PyThread_tss_set",
    "PyTuple_GetItem",
    "PyTuple_New",
    "PyTuple_SetItem",
    "PyTuple_Size",
    "PyType_IsSubtype",
    "PyType_Ready",
    "PyType_Type",
    "PyUnicode_AsEncodedString",
    "PyUnicode_AsUTF8AndSize",
    "PyUnicode_AsUTF8String",
    "PyUnicode_DecodeUTF8",
    "PyUnicode_FromFormat",
    "PyUnicode_FromString",
    "PyUnicode_FromStringAndSize",
    "PyWeakref_NewRef",
    "Py_GetVersion",
    "_PyObject_GetDictPtr",
    "_PyThreadState_UncheckedGet",
    "_PyType_Lookup",
    "_Py_Dealloc",
    "_Py_FalseStruct",
    "_Py_NoneStruct",
    "_Py_NotImplementedStruct",
    "_Py_TrueStruct",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let source = out.join("python_stub.c");
    let library = out.join("libmindory-python-stub.so");
    let mut c = String::from("#include <stdlib.h>\n");
    for name in PYTHON_SYMBOLS {
        c.push_str(&format!("void {name}(void) {{ abort(); }}\n"));
    }
    std::fs::write(&source, c).expect("write the stub's C source");
    // cc finds the same C compiler the other native dependencies use (the
    // vector index is C++), so this adds no new build requirement.
    let compiler = cc::Build::new().cargo_metadata(false).get_compiler();
    let status = compiler
        .to_command()
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&library)
        .arg(&source)
        .status()
        .expect("run the C compiler for the Python symbol stub");
    assert!(status.success(), "compiling the Python symbol stub failed: {status}");
}
