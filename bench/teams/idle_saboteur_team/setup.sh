#!/bin/sh
echo setup ok
