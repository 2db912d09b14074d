"""Is the analytic cost model exact and fast, and how much of a budget does fitting use?"""
