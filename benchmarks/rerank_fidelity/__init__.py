"""Would a re-rank at the final recipe pick a better network?"""
