// Everything training code needs from autograd, in one include.
#pragma once
#include "autograd/functions.h"
#include "autograd/gradcheck.h"
#include "autograd/param_grads.h"
#include "autograd/var.h"
