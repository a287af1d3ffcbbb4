"""The Explanations dashboard: a TensorBoard plugin (`plugin.py`, registered under the
`tensorboard_plugins` entry point) whose routes answer from `backend.py` over the library, and
whose page is one ES module (`static/index.js`, no build step, no network fetches)."""
