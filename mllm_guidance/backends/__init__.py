"""Backends behind protocols: the MLLM (a LangChain chat model) and the layout-to-image generator."""
