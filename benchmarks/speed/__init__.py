"""How fast is the pipeline, and where does its time go?"""
