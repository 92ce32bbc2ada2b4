"""The compiler judge: one sandboxed rustc job per sample, and syntax-tree metrics of the code.

`jobs` (check, lint, build and test; cached), `diagnostics` (rustc's and clippy's JSON messages
counted), `sandbox` (one untrusted process, confined and limited) with its levels
(`sandbox_levels`; `jail` for Linux namespaces, `seatbelt` for macOS, `limited_exec` the child side
of the POSIX limits), and `syntax` (tree-sitter metrics). May import the core modules only. The
only package that starts rustc or untrusted code.
"""
