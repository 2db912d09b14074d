"""How well does a short search-time recipe rank networks?"""
