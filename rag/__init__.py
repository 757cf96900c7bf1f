"""Retrieval-augmented answering over PDFs: parse, chunk, embed, index, retrieve, prompt, generate.

Only this package imports the ML libraries (torch, sentence-transformers, faiss, llama-cpp-python),
and each of them only inside the one module that wraps it.
"""
