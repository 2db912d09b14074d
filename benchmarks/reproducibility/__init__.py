"""Does an export's retrain give the same network with another thread count?"""
