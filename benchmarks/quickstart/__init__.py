"""How does the quickstart fare over sampler seeds?"""
