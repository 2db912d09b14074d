"""How well does the latency table predict, and how do the runtimes compare?"""
