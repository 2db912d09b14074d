"""Does a study survive a process killed at any moment?"""
