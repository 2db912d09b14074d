"""Does the search beat hand-designed networks and random search on Fashion-MNIST?"""
