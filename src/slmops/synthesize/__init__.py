"""synthesize"""
