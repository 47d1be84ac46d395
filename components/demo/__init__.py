"""The offline demo's stand-ins: shipped data, a tokenizer, a tiny student base model and a demo teacher.

Nothing here is used by the production path; it only builds what a real user would download or rent.
"""
